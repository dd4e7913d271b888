"""`scholarsource bench`: load runs that tell a team what their machine can do.

command.py parses the command line; runner.py starts (or finds) the server and runs the
scenarios of scenarios.py and jobruns.py through the load generator of loadgen.py and
flows.py; procstats.py measures the server's processes by role; table.py, compare.py,
sweep.py and html_report.py present the results; machine.py records the facts they need.
"""
