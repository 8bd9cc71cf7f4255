"""Recotap: map CRM external ids onto Recotap accounts by domain."""
