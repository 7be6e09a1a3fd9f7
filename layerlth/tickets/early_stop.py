"""Early stopping of losing tickets: at rung epochs (fractions of training, `stop_rungs`) a ticket's
test accuracy is compared with its dense run's at the same epoch, same seed and lr schedule (the
stored dense run's curve); a ticket behind by more than `stop_margin` points stops there, and its
record says `status: stopped_early` with the evidence. A depth search counts it as a loss; a grid
relaunch does not count it as finished. Off by default: the exact answer stays the default.

A rung needs the dense curve: a ticket that reaches one before its dense run is stored goes on
(a depth search with early stopping starts its tickets once the dense runs are stored).
How often the early verdict is the final one, on full curves: `layerlth.search.early`.
"""


def rung_epochs(rungs, epochs):
    """The epochs after which a rung compares (never the last: the final verdict is the verdict)."""
    return sorted({max(1, round(r * epochs)) for r in rungs} - {epochs})


def behind(ticket_curve, dense_curve, epoch):
    """Points the ticket trails the dense run after `epoch` (negative: ahead)."""
    return 100 * (dense_curve[epoch] - ticket_curve[epoch])


def curve(history):
    return {h["epoch"]: h["test_acc"] for h in history or ()}


class EarlyStop:
    """Training callback: stop (return True) at the first rung where the ticket trails by > margin."""

    def __init__(self, config, run, epochs):
        self.rungs, self.margin, self.run = rung_epochs(config.stop_rungs, epochs), config.stop_margin, run
        self.evidence = None

    def __call__(self, state):
        if state.metrics is None or state.epoch not in self.rungs or not self.run.complete():
            return False
        dense = curve(self.run.result().get("history"))
        if state.epoch not in dense:
            return False
        trail = behind(curve(state.history), dense, state.epoch)
        if trail <= self.margin:
            return False
        self.evidence = {"epoch": state.epoch, "ticket_test_acc": state.metrics["test_acc"],
                         "dense_test_acc": dense[state.epoch], "behind_points": trail, "margin": self.margin,
                         "rungs": self.rungs}
        return True
