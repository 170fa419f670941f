from netbench.cli import entry

entry()
