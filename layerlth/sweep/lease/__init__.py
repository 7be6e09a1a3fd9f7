"""One driver per sweep: a file lock on local storage (`local`), a lease with a heartbeat on an
object store (`objects`), and the context manager the runner holds (`driver`)."""
