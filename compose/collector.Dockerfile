# The pinned Collector contrib image, plus one static busybox binary so the
# compose healthcheck can probe the health_check extension from inside the
# container (the contrib image is built FROM scratch: no shell, no wget).
# The Collector itself is unchanged: same binary, same entrypoint, same user.

FROM busybox:1.36.1-musl AS probe

FROM otel/opentelemetry-collector-contrib:0.135.0
COPY --from=probe /bin/busybox /probe/busybox
