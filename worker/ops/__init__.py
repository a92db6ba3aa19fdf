"""Operations tooling: dead-letter inspection and replay, readiness checks, metric sampling."""
