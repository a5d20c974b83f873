# xnic in a minimal image: a static binary (CGO_ENABLED=0; the XDP
# objects are embedded by bpf2go) on distroless static. It needs no shell,
# no libc and no tools at run time.
#
#   docker build -t xnic .
#   docker run --rm --network host --cap-drop ALL \
#     --cap-add BPF --cap-add NET_ADMIN --cap-add NET_RAW --cap-add IPC_LOCK --cap-add PERFMON \
#     --ulimit memlock=-1 -v /sys/fs/bpf:/sys/fs/bpf -v /run/xnic:/run/xnic \
#     -v /etc/xnic:/etc/xnic:ro xnic serve --config /etc/xnic/xnic.yaml
#
# deploy/kubernetes/daemonset.yaml runs it on every node.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/xnic ./cmd/xnic

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/xnic /usr/local/bin/xnic
ENTRYPOINT ["/usr/local/bin/xnic"]
CMD ["serve", "--config", "/etc/xnic/xnic.yaml"]
