"""Report subscriptions: report files under ``reports/`` delivered by email on a cron schedule."""
