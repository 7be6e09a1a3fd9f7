"""The depth search: the largest p whose ticket still wins, found in rounds from stored records
(`core`), its grid entries (`specs`), early stopping's agreement (`early`), its cost and summaries
(`report`), tables (`tables`) and figure (`plot`). It proposes configs and reads results; it never
imports the trial module (the Tune searcher that runs it: `sweep.tune.depth_searcher`)."""
