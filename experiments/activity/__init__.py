"""Activity detection and early detection (Ma, Sigal & Sclaroff 2016), issue #17."""
