"""BigQuery access: the local emulator service, clients for either target, loading and reading."""
