"""Cora (Corafone) external API: signing, schema, client and bulk upsert."""
