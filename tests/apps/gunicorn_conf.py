from infersight.multiprocess import child_exit  # noqa: F401
