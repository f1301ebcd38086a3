import random

import pytest
import torch

from swedge.methods import projection
from swedge.methods.projection import merge, project_conflicts, usage

T = torch.tensor


def _flat(gw, shapes):
    return torch.cat([(gw.get(n) if gw.get(n) is not None else torch.zeros(s)).reshape(-1).double()
                      for n, s in shapes.items()])


def _reference(grads, shapes, order, granularity):
    """Literal PCGrad, float64, on flattened gradients (missing = zeros), one group at a time, plus the
    PrunNet-style merge (mean where every width has the parameter, sum elsewhere)."""
    flats = [_flat(gw, shapes) for gw in grads]
    groups, start = [], 0  # index ranges of the flattened vector that form one projection group
    for name, s in shapes.items():
        numel = int(torch.Size(s).numel())
        if granularity == "kernel" and len(s) >= 2:
            groups += [slice(start + r * numel // s[0], start + (r + 1) * numel // s[0]) for r in range(s[0])]
        elif granularity != "vector":
            groups.append(slice(start, start + numel))
        start += numel
    if granularity == "vector":
        groups = [slice(0, start)]
    projected = [f.clone() for f in flats]
    for sl in groups:
        for i, js in enumerate(order):
            for j in js:
                d = projected[i][sl] @ flats[j][sl]
                if d < 0:
                    projected[i][sl] -= d / (flats[j][sl] @ flats[j][sl]) * flats[j][sl]
    has = torch.stack([torch.cat([torch.full((int(torch.Size(s).numel()),), gw.get(n) is not None)
                                  for n, s in shapes.items()]) for gw in grads])
    shared = has.all(0)
    stack = torch.stack(projected)
    merged = torch.where(shared, stack.mean(0), stack.sum(0))
    return projected, merged


def _random_case(n=4, seed=0):
    """Shared conv/linear weights plus width-private BN parameters, with strong conflicts."""
    gen = torch.Generator().manual_seed(seed)
    shapes = {"conv.weight": (6, 3, 3, 3), "fc.weight": (5, 4), "fc.bias": (5,)}
    shapes.update({f"bn.{w}.weight": (6,) for w in range(n)})
    base = {k: torch.randn(s, generator=gen) for k, s in shapes.items()}
    grads = []
    for w in range(n):
        sign = 1.0 if w % 2 == 0 else -0.7  # neighbouring widths pull against each other
        gw = {k: sign * base[k] + torch.randn(s, generator=gen) for k, s in shapes.items() if not k.startswith("bn.")}
        gw.update({f"bn.{v}.weight": (torch.randn(6, generator=gen) if v == w else None) for v in range(n)})
        grads.append(gw)
    return grads, shapes


@pytest.mark.parametrize("granularity", ["vector", "tensor", "kernel"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_literal_pcgrad_and_reference_merge(granularity, seed):
    grads, shapes = _random_case(seed=seed)
    res = project_conflicts(grads, granularity=granularity, generator=torch.Generator().manual_seed(seed))
    assert res.num_conflicts > 0
    projected, merged = _reference(grads, shapes, res.order, granularity)
    for got, want in zip(res.grads, projected):
        torch.testing.assert_close(_flat(got, shapes), want, rtol=1e-5, atol=1e-5, check_dtype=False)
    torch.testing.assert_close(_flat(res.merged("mean"), shapes), merged, rtol=1e-5, atol=1e-5, check_dtype=False)
    torch.testing.assert_close(_flat(merge(res.grads, res.used, "mean"), shapes), merged, rtol=1e-5, atol=1e-5,
                               check_dtype=False)


@pytest.mark.parametrize("granularity", ["vector", "kernel"])
def test_blocked_gram_and_dtypes(monkeypatch, granularity):
    # Tiny blocks split every tensor (and the conv's rows) into many Gram blocks; float64 and bfloat16 grads work.
    grads, shapes = _random_case(seed=4)
    want = project_conflicts(grads, granularity=granularity, generator=random.Random(1))
    monkeypatch.setattr(projection, "CHUNK", 7)
    got = project_conflicts(grads, granularity=granularity, generator=random.Random(1))
    assert got.order == want.order and got.num_conflicts == want.num_conflicts
    for name in shapes:
        torch.testing.assert_close(got.coef[name], want.coef[name])
    g64 = [{k: (v.double() if v is not None else None) for k, v in gw.items()} for gw in grads]
    res64 = project_conflicts(g64, granularity=granularity, generator=random.Random(1))
    assert res64.merged()["conv.weight"].dtype == torch.float64
    torch.testing.assert_close(res64.merged()["conv.weight"], want.merged()["conv.weight"].double(), rtol=1e-5,
                               atol=1e-5)
    g16 = [{k: (v.bfloat16() if v is not None else None) for k, v in gw.items()} for gw in grads]
    res16 = project_conflicts(g16, granularity=granularity, generator=random.Random(1))
    assert res16.merged()["conv.weight"].dtype == torch.bfloat16


@pytest.mark.parametrize("granularity", ["vector", "tensor", "kernel"])
@pytest.mark.parametrize("layouts", ["all", "mixed"])
def test_channels_last_gradients_give_the_same_projection(granularity, layouts):
    # --channels-last makes conv gradients NHWC; the Gram reads them in memory order (no copy). The result must
    # not depend on the layout, also when only some widths' gradients are NHWC.
    grads, shapes = _random_case(seed=5)
    want = project_conflicts(grads, granularity=granularity, generator=random.Random(2))
    nhwc = [{k: (v.contiguous(memory_format=torch.channels_last)
                 if v is not None and v.dim() == 4 and (layouts == "all" or w % 2) else v)
             for k, v in gw.items()} for w, gw in enumerate(grads)]
    assert projection._is_nhwc(nhwc[1]["conv.weight"])
    got = project_conflicts(nhwc, granularity=granularity, generator=random.Random(2))
    assert got.order == want.order and got.num_conflicts == want.num_conflicts
    for name in shapes:  # equal up to the summation order of the inner products
        torch.testing.assert_close(got.coef[name], want.coef[name], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_flat(got.merged(), shapes), _flat(want.merged(), shapes), rtol=1e-5, atol=1e-6)


def test_two_task_conflict_is_removed():
    g0 = {"w": T([1.0, 0.0, 2.0]), "b": T([0.5])}
    g1 = {"w": T([-2.0, 1.0, -1.0]), "b": T([0.1])}
    res = project_conflicts([g0, g1], generator=random.Random(0))
    (p0, p1), flat = res.grads, lambda g: torch.cat([g["w"], g["b"]])
    f0, f1 = flat(g0), flat(g1)
    assert f0 @ f1 < 0
    assert flat(p0) @ f1 >= -1e-6 and flat(p1) @ f0 >= -1e-6
    torch.testing.assert_close(flat(p0), f0 - (f0 @ f1) / (f1 @ f1) * f1)
    assert res.num_conflicts == 2 and res.pairs_checked == 2


def test_non_conflicting_gradients_are_untouched():
    torch.manual_seed(0)
    base = {"w": torch.randn(4, 3), "b": torch.randn(4)}
    grads = [{k: v + 0.1 * torch.randn_like(v) for k, v in base.items()} for _ in range(3)]
    for granularity in ("vector", "tensor", "kernel"):
        res = project_conflicts(grads, granularity=granularity, generator=torch.Generator().manual_seed(1))
        assert res.num_conflicts == 0 and res.conflict_fraction == 0.0
        for got, orig in zip(res.grads, grads):
            assert all(got[k] is orig[k] for k in orig)  # the very same tensors, not even a copy


def test_merge_means_shared_and_sums_private():
    g = [{"shared": T([1.0, 2.0]), "bn.0": T([3.0]), "bn.1": None, "pair": T([1.0])},
         {"shared": T([3.0, 6.0]), "bn.0": None, "bn.1": T([5.0]), "pair": T([2.0])},
         {"shared": T([2.0, 1.0]), "bn.0": None, "pair": None}]  # width 2 has no 'bn.1' key at all
    out = merge(g, shared_rule="mean")
    torch.testing.assert_close(out["shared"], T([2.0, 3.0]))
    torch.testing.assert_close(out["bn.0"], T([3.0]))
    torch.testing.assert_close(out["bn.1"], T([5.0]))
    torch.testing.assert_close(out["pair"], T([3.0]))  # used by 2 of 3 widths: private, summed
    assert out["bn.0"] is not g[0]["bn.0"]
    # Zero-filled instead of None: usage(nonzero=True) recovers who uses what.
    zf = [{k: (v if v is not None else torch.zeros(1)) for k, v in gw.items() if k != "shared"} for gw in g]
    assert usage(zf, nonzero=True) == [{"bn.0", "pair"}, {"bn.1", "pair"}, set()]
    torch.testing.assert_close(merge(zf, usage(zf, nonzero=True), "mean")["pair"], T([3.0]))
    assert "nothing" not in merge([{"nothing": None}, {}])
    # The "sum" rule sums shared parameters too, like gradients accumulated by backward.
    summed = merge(g)  # the default: sum (PCGrad's Algorithm 1)
    torch.testing.assert_close(summed["shared"], T([6.0, 9.0]))
    torch.testing.assert_close(summed["bn.1"], T([5.0]))
    res = project_conflicts(g, generator=random.Random(0))
    torch.testing.assert_close(res.merged("sum")["shared"], merge(res.grads, res.used, "sum")["shared"])
    with pytest.raises(ValueError, match="unknown merge"):
        merge(g, shared_rule="max")


def test_tensor_and_kernel_granularity_act_locally():
    # Whole vectors agree (big aligned 'a'); tensor 'k' conflicts as a whole only through its row 0.
    g0 = {"a": T([10.0, 10.0]), "k": T([[1.0, 0.0], [3.0, 0.0]])}
    g1 = {"a": T([10.0, 10.0]), "k": T([[-1.0, 0.0], [0.5, 0.0]])}
    g2 = {"a": T([10.0, 10.0]), "k": T([[-2.0, 1.0], [-4.0, 0.0]])}
    vec = project_conflicts([g0, g1, g2], granularity="vector", generator=random.Random(0))
    assert vec.num_conflicts == 0
    ten = project_conflicts([g0, g1, g2], granularity="tensor", generator=random.Random(0))
    assert ten.grads[0]["a"] is g0["a"]  # 'a' untouched
    # Shares count groups (tensors): 'k' conflicts with g2, 'a' does not; <g0_k, g1_k> = 0.5 > 0.
    assert ten.conflict_share[(0, 2)] == 0.5 and ten.conflict_share[(0, 1)] == 0.0
    assert float((ten.grads[0]["k"] * g2["k"]).sum()) >= -1e-6
    ker = project_conflicts([g0, g1], granularity="kernel", generator=random.Random(0))
    # Groups: 'a' (1-D, whole) and the two rows of 'k'. Row 0 conflicts (-1), row 1 does not (1.5).
    assert ker.conflict_share[(0, 1)] == pytest.approx(1 / 3) and ker.num_conflicts == 2 and ker.pairs_checked == 6
    torch.testing.assert_close(ker.grads[0]["k"], T([[0.0, 0.0], [3.0, 0.0]]))
    torch.testing.assert_close(ker.grads[1]["k"], T([[0.0, 0.0], [0.5, 0.0]]))


def test_seeded_order_is_deterministic():
    grads, _ = _random_case(n=4, seed=3)
    for make in (lambda: torch.Generator().manual_seed(7), lambda: random.Random(7)):
        a, b = (project_conflicts(grads, granularity="tensor", generator=make()) for _ in range(2))
        assert a.order == b.order
        assert all(sorted(o) == [j for j in range(4) if j != i] for i, o in enumerate(a.order))
        for ga, gb in zip(a.grads, b.grads):
            assert all(torch.equal(ga[k], gb[k]) for k in ga)
    orders = {str(project_conflicts(grads, generator=torch.Generator().manual_seed(s)).order) for s in range(8)}
    assert len(orders) > 1  # the order really is random across seeds
    random.seed(5)
    first = project_conflicts(grads).order
    random.seed(5)
    assert project_conflicts(grads).order == first  # None = the global random module, as the reference


def test_statistics_on_a_constructed_case():
    # g2 conflicts with g0 only; projecting never creates a new conflict here, whatever the order.
    g = [{"p": T([1.0, 0.0, 0.0]), "bn.1": None, "zeros": torch.zeros(2)},
         {"p": T([0.0, 1.0, 0.0]), "bn.1": T([1.0]), "zeros": torch.zeros(2)},
         {"p": T([-1.0, 0.0, 1.0]), "bn.1": None, "zeros": torch.zeros(2)}]
    for granularity in ("vector", "tensor", "kernel"):
        for seed in range(4):
            res = project_conflicts(g, granularity=granularity, generator=torch.Generator().manual_seed(seed))
            assert res.pairs_checked == 6  # only 'p': bn.1 and the zero-filled tensor never count
            assert res.num_conflicts == 2 and res.conflict_fraction == pytest.approx(1 / 3)
            assert res.conflict_share == {(0, 1): 0.0, (0, 2): 1.0, (1, 0): 0.0, (1, 2): 0.0, (2, 0): 1.0,
                                          (2, 1): 0.0}
            torch.testing.assert_close(res.grads[0]["p"], T([0.5, 0.0, 0.5]))
            torch.testing.assert_close(res.grads[2]["p"], T([0.0, 0.0, 1.0]))


def test_vector_projection_writes_into_other_widths_private_params():
    # The flattened reference's behaviour: g0' = g0 - c * g1 also fills g1's private BN entry.
    g0 = {"w": T([1.0, 0.0]), "bn.0": T([1.0]), "bn.1": None}
    g1 = {"w": T([-1.0, 1.0]), "bn.0": None, "bn.1": T([2.0])}
    res = project_conflicts([g0, g1], granularity="vector", generator=random.Random(0))
    c = -1.0 / 6.0  # <g0, g1> / ||g1||^2
    torch.testing.assert_close(res.grads[0]["bn.1"], T([-c * 2.0]))
    assert res.used == [{"w", "bn.0"}, {"w", "bn.1"}]
    merged = res.merged("mean")
    torch.testing.assert_close(merged["bn.1"], res.grads[0]["bn.1"] + res.grads[1]["bn.1"])  # summed
    torch.testing.assert_close(merged["w"], (res.grads[0]["w"] + res.grads[1]["w"]) / 2)  # averaged
    # Per tensor the private BNs never interact.
    ten = project_conflicts([g0, g1], granularity="tensor", generator=random.Random(0))
    assert ten.grads[0].get("bn.1") is None and ten.grads[0]["bn.0"] is g0["bn.0"]


def test_used_override_and_errors():
    g = [{"w": T([1.0]), "bn": torch.zeros(1)}, {"w": T([-1.0]), "bn": T([2.0])}]
    res = project_conflicts(g, granularity="tensor", generator=random.Random(0), used=usage(g, nonzero=True))
    torch.testing.assert_close(res.merged()["bn"], T([2.0]))  # private (summed), not averaged to 1.0
    with pytest.raises(ValueError, match="kernel"):
        project_conflicts(g, granularity="layer")
    with pytest.raises(ValueError, match="shapes"):
        project_conflicts([{"w": torch.ones(2)}, {"w": torch.ones(3)}])
    with pytest.raises(ValueError):
        project_conflicts([])
