# Turns every citation of the out-of-repo design notes into one of the in-repo docs (issue 19, item 6).
# Apply from the repository root, e.g.:
#   git grep -l -E 'DESIGN §|backends\.md §' -- '*.py' | xargs sed -i -f CITATIONS.sed
# Idempotent: running it twice changes nothing more.
# DESIGN §N (DESIGN.md's sections keep their numbers in docs/design.md)
s/DESIGN §\([0-9]\)/docs\/design.md §\1/g
# notes/backends.md §N -> docs/backends.md §N
s/notes\/backends\.md §/docs\/backends.md §/g
# a bare backends.md §N (not already under docs/) -> docs/backends.md §N
s/\(^\|[^/]\)backends\.md §/\1docs\/backends.md §/g
