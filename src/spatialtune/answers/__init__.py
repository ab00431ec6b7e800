"""Reading and judging answers: one parser (`parse`) and one matcher (`match`) for builders, benchmarks and rewards.

Every parser returns None (or an empty list) when an output holds no answer of its kind, so that callers count
unparsable outputs instead of crashing on them. Matchers take parsed answers in pixels (or the task's own frame).
"""
