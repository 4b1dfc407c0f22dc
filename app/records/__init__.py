"""Wire formats, by direction: `inputs` (clicks, orders), `configuration` (shops, channels,
activities, policies, sinks), `operations` (profiles, lists, plans, their records), `outputs`
(what the engine publishes, dead letters), `internal` (what it writes for itself); `fields`
holds the field readers they share."""
