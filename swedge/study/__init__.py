"""The method study: train methods over seeds, tabulate them, and check the paper's claims."""
