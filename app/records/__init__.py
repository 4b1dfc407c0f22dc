"""Wire formats, by direction: `inputs` (clicks, orders), `configuration` (shops, channels,
activities, policies, sinks), `outputs` (what the engine publishes, dead letters); `fields`
holds the field readers they share."""
