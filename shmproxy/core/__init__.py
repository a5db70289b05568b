"""shmproxy's working core: ring, records, settings, proxy, adapters. No printing, no Typer."""
