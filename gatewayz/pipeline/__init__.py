"""The inference path as small ordered stages over one RequestContext:
authenticate -> parse -> resolve -> reserve -> dispatch (failover) -> settle -> record."""
