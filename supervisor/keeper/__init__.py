"""The table keeper: the process that keeps a daemon's copies of table partitions it does
not process (standby replicas, GlobalTables), by tailing their changelogs.

It runs beside the instances, started and stopped by the daemon
(``supervisor/daemon/keeper.py``), so copying changelogs costs neither the
supervisor's loop nor an agent's.
"""
