"""The daemon's operator-facing side: control socket, status, sd_notify, metrics."""
