"""Referrals: each user's code, who applied it, and the bonus both sides get on the first purchase."""
