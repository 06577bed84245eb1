"""Runtime: the hardware, the arithmetic (precision), memory and thread settings, and FLOP counts for MFU."""
