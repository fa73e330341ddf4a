"""The runtime layer: the only code that blocks, sleeps or starts threads."""
