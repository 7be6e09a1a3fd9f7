"""The training engine: the loop (`loop`), one step eager or as a CUDA graph (`steps`), packs of
runs in one process (`pack`), the fast path per device (`fastpath`), early stopping (`early_stop`)
and the checkpoint format (`checkpoints`). It imports no ticket procedure."""
