"""The I/O layer: the one copy loop, file wrappers, child processes, pipes and object stores."""
