"""The notifier: delivers alerts to email, Slack, webhooks, PagerDuty and Opsgenie."""
