"""`cifar10-tfx`: every command of the project, one click group (cli.main)."""
