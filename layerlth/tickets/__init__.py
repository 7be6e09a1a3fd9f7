"""Layer tickets: the procedures that make them (`procedures`: at init, after training, filter
tickets), removal in rounds (`rounds`), the dense runs they share (`dense_runs`), the winning-ticket
verdict (`verdict`), representation similarity (`similarity`), the checks of a trial's options
(`validate`) and the trial itself (`trial`: config -> row)."""
