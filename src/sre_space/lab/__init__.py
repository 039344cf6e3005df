"""The embedded lab: real instrumented services, a database, load and chaos."""
