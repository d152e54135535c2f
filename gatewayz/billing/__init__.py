"""Credits: money units, holds before an upstream call, settlement and the ledger."""
