"""Subscription plans, their monthly allowance, trials, partner trials and daily spend caps."""
