# Builds Caddy with wskafka compiled in, the standard way: xcaddy in the builder, the official image to run.
#   docker build -f xcaddy.Dockerfile -t caddy-wskafka .
#   docker run -p 8080:8080 -e KAFKA_BROKERS=kafka:9092 caddy-wskafka
FROM caddy:2.11.9-builder AS builder
COPY . /src/wskafka
RUN xcaddy build v2.11.9 --with github.com/wskafka/wskafka=/src/wskafka

FROM caddy:2.11.9
COPY --from=builder /usr/bin/caddy /usr/bin/caddy
COPY Caddyfile.example /etc/caddy/Caddyfile
