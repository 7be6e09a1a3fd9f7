"""The Ray Tune pieces of a sweep: the trainable (`trainable`), packs of trials per Tune trial
(`packs`), the driver's store callback (`callbacks`), and the searchers: the dense-run gate
(`dense_gate`) and the depth searcher (`depth_searcher`, beside the gate: both are Tune searchers
handing out the sweep's trials, and the depth search itself stays free of Ray in `layerlth.search`)."""
