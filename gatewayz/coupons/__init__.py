"""Coupons: admin-issued credit codes, redeemed once per user (or up to a limit) into the ledger."""
