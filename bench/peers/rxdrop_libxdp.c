// SPDX-License-Identifier: BSD-2-Clause
//
// rxdrop_libxdp: the C reference peer for xnic's receive benchmark.
//
// It receives and drops frames on one interface queue through an AF_XDP
// socket driven by libxdp's ring helpers (xsk_ring_cons__peek and friends),
// in batches of 64, busy polling. By default it loads no XDP program: it
// inserts its socket at key=queue into an XSKMAP that someone else pinned
// (-xskmap), so every AF_XDP peer can run behind the same XDP program. With
// -bare it loads its own, as an AF_XDP application does: an XSKMAP and a
// program that only does bpf_redirect_map(&xsks, ctx->rx_queue_index,
// XDP_PASS), attached in native mode through a bpf_link (libxdp's own
// loader and dispatcher fail on some kernels, so it is not used).
//
// Build: cc -O2 -Wall -o rxdrop_libxdp rxdrop_libxdp.c -lxdp -lbpf
//
// Usage: rxdrop_libxdp -iface IF [-queue Q] [-duration 5s] (-xskmap PATH | -bare) [-json]
//                      [-frame-size 4096] [-frames 4096] [-rx-size 2048] [-batch 64]
//
// It prints "ready" on stderr when the socket is in the map and the
// measurement window starts; a human summary on stdout when the window ends;
// and with -json, a last stdout line holding one JSON object.

#include <errno.h>
#include <net/if.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <stddef.h>
#include <xdp/xsk.h>

#define MAX_BATCH 256
#define BIND_RETRY_S 5.0

struct options {
	const char *iface;
	unsigned int queue;
	double duration_s;
	const char *xskmap;
	bool bare;
	bool json;
	unsigned int frame_size;
	unsigned int num_frames;
	unsigned int rx_size;
	unsigned int batch;
};

// counters groups what the receive loop counts; only the loop writes it.
struct counters {
	uint64_t packets;
	uint64_t bytes;
	uint64_t rx_empty_polls;
	uint64_t fill_wakeups;
};

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: rxdrop_libxdp -iface IF (-xskmap PATH | -bare) [-queue Q] [-duration D] [-json]\n"
		"                     [-frame-size 2048|4096] [-frames N] [-rx-size N] [-batch N]\n"
		"  D is a Go-style duration (500ms, 5s, 1m) or plain seconds.\n");
}

// parse_duration accepts a Go-style duration ("1m30s", "500ms", "2.5s") or a
// bare number of seconds.
static int parse_duration(const char *s, double *out)
{
	double total = 0;
	char *end;

	if (*s == '\0')
		return -1;
	for (;;) {
		double v = strtod(s, &end);
		if (end == s)
			return -1;
		s = end;
		if (*s == '\0') { // bare number: seconds
			total += v;
			break;
		}
		if (strncmp(s, "ns", 2) == 0) {
			total += v / 1e9;
			s += 2;
		} else if (strncmp(s, "us", 2) == 0) {
			total += v / 1e6;
			s += 2;
		} else if (strncmp(s, "ms", 2) == 0) {
			total += v / 1e3;
			s += 2;
		} else if (*s == 's') {
			total += v;
			s++;
		} else if (*s == 'm') {
			total += v * 60;
			s++;
		} else if (*s == 'h') {
			total += v * 3600;
			s++;
		} else {
			return -1;
		}
		if (*s == '\0')
			break;
	}
	if (total <= 0)
		return -1;
	*out = total;
	return 0;
}

static int parse_uint(const char *s, unsigned int *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno != 0 || end == s || *end != '\0' || v > UINT32_MAX)
		return -1;
	*out = (unsigned int)v;
	return 0;
}

static bool is_pow2(unsigned int v)
{
	return v != 0 && (v & (v - 1)) == 0;
}

// parse_args understands Go's flag syntax: -name value, -name=value, and the
// same with two dashes; -json takes no value.
static int parse_args(int argc, char **argv, struct options *o)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = NULL;
		char name[32];
		const char *eq;
		size_t n;

		if (a[0] != '-') {
			fprintf(stderr, "parse flags: unexpected argument %s\n", a);
			return -1;
		}
		a += (a[1] == '-') ? 2 : 1;
		eq = strchr(a, '=');
		n = eq ? (size_t)(eq - a) : strlen(a);
		if (n >= sizeof(name)) {
			fprintf(stderr, "parse flags: unknown flag %s\n", argv[i]);
			return -1;
		}
		memcpy(name, a, n);
		name[n] = '\0';
		if (eq)
			val = eq + 1;

		if (strcmp(name, "h") == 0 || strcmp(name, "help") == 0) {
			usage(stdout);
			exit(0);
		}
		if (strcmp(name, "bare") == 0) {
			o->bare = !val || strcmp(val, "true") == 0 || strcmp(val, "1") == 0;
			continue;
		}
		if (strcmp(name, "json") == 0) {
			o->json = !val || strcmp(val, "true") == 0 || strcmp(val, "1") == 0;
			continue;
		}
		if (!val) {
			if (i + 1 >= argc) {
				fprintf(stderr, "parse flags: flag %s needs a value\n", argv[i]);
				return -1;
			}
			val = argv[++i];
		}
		if (strcmp(name, "iface") == 0) {
			o->iface = val;
		} else if (strcmp(name, "xskmap") == 0) {
			o->xskmap = val;
		} else if (strcmp(name, "duration") == 0) {
			if (parse_duration(val, &o->duration_s) != 0) {
				fprintf(stderr, "parse flag -duration: bad duration %s\n", val);
				return -1;
			}
		} else {
			unsigned int *dst;

			if (strcmp(name, "queue") == 0)
				dst = &o->queue;
			else if (strcmp(name, "frame-size") == 0)
				dst = &o->frame_size;
			else if (strcmp(name, "frames") == 0)
				dst = &o->num_frames;
			else if (strcmp(name, "rx-size") == 0)
				dst = &o->rx_size;
			else if (strcmp(name, "batch") == 0)
				dst = &o->batch;
			else {
				fprintf(stderr, "parse flags: unknown flag -%s\n", name);
				return -1;
			}
			if (parse_uint(val, dst) != 0) {
				fprintf(stderr, "parse flag -%s: bad number %s\n", name, val);
				return -1;
			}
		}
	}

	if (!o->iface || (!o->xskmap == !o->bare)) {
		fprintf(stderr, "parse flags: -iface and one of -xskmap or -bare are required\n");
		return -1;
	}
	if (o->frame_size != 2048 && o->frame_size != 4096) {
		fprintf(stderr, "parse flags: -frame-size must be 2048 or 4096\n");
		return -1;
	}
	if (!is_pow2(o->num_frames) || !is_pow2(o->rx_size)) {
		fprintf(stderr, "parse flags: -frames and -rx-size must be powers of two\n");
		return -1;
	}
	if (o->batch == 0 || o->batch > MAX_BATCH) {
		fprintf(stderr, "parse flags: -batch must be in 1..%d\n", MAX_BATCH);
		return -1;
	}
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

// rx_loop is the measured hot path: peek up to batch rx descriptors, hand the
// same frames straight back to the fill ring, release the rx entries. It spins
// and makes a syscall only when the kernel asks for a fill-ring wakeup.
static void rx_loop(struct xsk_socket *xsk, struct xsk_ring_cons *rx,
		    struct xsk_ring_prod *fq, unsigned int batch, struct counters *c)
{
	int fd = xsk_socket__fd(xsk);

	while (!stop_requested) {
		__u32 idx_rx = 0, idx_fq = 0;
		unsigned int rcvd, i;

		rcvd = xsk_ring_cons__peek(rx, batch, &idx_rx);
		if (rcvd == 0) {
			c->rx_empty_polls++;
			if (xsk_ring_prod__needs_wakeup(fq)) {
				c->fill_wakeups++;
				recvfrom(fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
			}
			continue;
		}

		// Every frame is either in the fill ring or in the rx ring, and
		// the fill ring holds all of them, so this reserve only waits
		// when the kernel has not consumed fill entries yet.
		while (xsk_ring_prod__reserve(fq, rcvd, &idx_fq) != rcvd) {
			if (stop_requested)
				return;
			if (xsk_ring_prod__needs_wakeup(fq)) {
				c->fill_wakeups++;
				recvfrom(fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
			}
		}
		for (i = 0; i < rcvd; i++) {
			const struct xdp_desc *d = xsk_ring_cons__rx_desc(rx, idx_rx++);

			c->bytes += d->len;
			*xsk_ring_prod__fill_addr(fq, idx_fq++) = d->addr;
		}
		xsk_ring_prod__submit(fq, rcvd);
		xsk_ring_cons__release(rx, rcvd);
		c->packets += rcvd;
	}
}

// load_bare creates an XSKMAP and the bare redirect program and attaches it
// to o->iface in native mode through a bpf_link, which goes away with the
// process. It returns the map's fd, or -1 after printing why.
static int load_bare(const struct options *o, int *prog_fd, int *link_fd)
{
	int map_fd = bpf_map_create(BPF_MAP_TYPE_XSKMAP, "xsks", 4, 4, 64, NULL);
	if (map_fd < 0) {
		fprintf(stderr, "create xskmap: %s\n", strerror(errno));
		return -1;
	}
	struct bpf_insn insns[] = {
		// r2 = ctx->rx_queue_index
		{ .code = BPF_LDX | BPF_MEM | BPF_W, .dst_reg = BPF_REG_2, .src_reg = BPF_REG_1,
		  .off = offsetof(struct xdp_md, rx_queue_index) },
		// r1 = &xsks
		{ .code = BPF_LD | BPF_DW | BPF_IMM, .dst_reg = BPF_REG_1, .src_reg = BPF_PSEUDO_MAP_FD, .imm = map_fd },
		{ 0 },
		// r3 = XDP_PASS: where no socket is registered
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_3, .imm = XDP_PASS },
		{ .code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_redirect_map },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	*prog_fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "xsk_bare", "GPL", insns,
				 sizeof(insns) / sizeof(insns[0]), NULL);
	if (*prog_fd < 0) {
		fprintf(stderr, "load bare redirect program: %s\n", strerror(errno));
		close(map_fd);
		return -1;
	}
	unsigned int ifindex = if_nametoindex(o->iface);
	LIBBPF_OPTS(bpf_link_create_opts, lo, .flags = XDP_FLAGS_DRV_MODE);
	*link_fd = bpf_link_create(*prog_fd, ifindex, BPF_XDP, &lo);
	if (*link_fd < 0) {
		fprintf(stderr, "attach bare redirect program to %s (native): %s\n", o->iface, strerror(errno));
		close(map_fd);
		return -1;
	}
	return map_fd;
}

int main(int argc, char **argv)
{
	struct options o = {
		.queue = 0,
		.duration_s = 5,
		.frame_size = XSK_UMEM__DEFAULT_FRAME_SIZE,
		.num_frames = 4096,
		.rx_size = XSK_RING_CONS__DEFAULT_NUM_DESCS,
		.batch = 64,
	};
	struct xsk_ring_prod fq;
	struct xsk_ring_cons cq, rx;
	struct xsk_umem *umem = NULL;
	struct xsk_socket *xsk = NULL;
	struct counters c = { 0 };
	struct xdp_statistics st = { 0 };
	struct xdp_options xo = { 0 };
	socklen_t optlen;
	struct rlimit rl;
	struct itimerval itv = { 0 };
	struct sigaction sa = { 0 };
	void *area = MAP_FAILED;
	size_t area_len;
	int map_fd = -1, prog_fd = -1, link_fd = -1, xsk_fd, err, rc = 1;
	bool in_map = false;
	__u32 idx = 0, key = 0;
	double start, elapsed, pps;
	struct xsk_umem_config ucfg = {
		.comp_size = XSK_RING_CONS__DEFAULT_NUM_DESCS,
		.frame_headroom = XSK_UMEM__DEFAULT_FRAME_HEADROOM,
		.flags = XSK_UMEM__DEFAULT_FLAGS,
	};
	struct xsk_socket_config scfg = {
		.tx_size = 0,
		.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
		.xdp_flags = 0,
		.bind_flags = XDP_USE_NEED_WAKEUP,
	};

	if (parse_args(argc, argv, &o) != 0) {
		usage(stderr);
		return 2;
	}
	if (if_nametoindex(o.iface) == 0) {
		fprintf(stderr, "look up interface %s: %s\n", o.iface, strerror(errno));
		return 1;
	}
	// Raise the soft memlock limit as far as the hard one allows. Nothing
	// else is possible without CAP_SYS_RESOURCE, and nothing else is
	// needed: CAP_IPC_LOCK exempts the UMEM, and BPF memory is charged to
	// the memory cgroup.
	if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_MEMLOCK, &rl);
	}

	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);

	area_len = (size_t)o.num_frames * o.frame_size;
	area = mmap(NULL, area_len, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (area == MAP_FAILED) {
		fprintf(stderr, "map umem area: %s\n", strerror(errno));
		goto out;
	}

	// The fill ring holds every frame (2x the rx ring by default), as in
	// the kernel's xdpsock sample.
	ucfg.fill_size = o.num_frames;
	ucfg.frame_size = o.frame_size;
	scfg.rx_size = o.rx_size;
	// A socket that just left this queue (the previous peer) frees it
	// asynchronously; until then bind fails with EBUSY. Retry for a while,
	// rebuilding the UMEM each time since its rings cannot be set twice.
	for (double give_up = now_s() + BIND_RETRY_S;;) {
		err = xsk_umem__create(&umem, area, area_len, &fq, &cq, &ucfg);
		if (err) {
			fprintf(stderr, "create umem: %s\n", strerror(-err));
			goto out;
		}
		xsk = NULL;
		err = xsk_socket__create(&xsk, o.iface, o.queue, umem, &rx, NULL, &scfg);
		if (err == 0)
			break;
		xsk = NULL;
		xsk_umem__delete(umem);
		umem = NULL;
		if (err != -EBUSY || stop_requested || now_s() > give_up) {
			fprintf(stderr, "create xsk on %s queue %u: %s\n", o.iface, o.queue,
				strerror(-err));
			goto out;
		}
		usleep(10000);
	}
	xsk_fd = xsk_socket__fd(xsk);

	// Post every frame to the fill ring. A bind retried after EBUSY has
	// been seen to leave libxdp's cached consumer index behind the ring,
	// so reserve in batches and let the kernel's own index catch up.
	for (unsigned int i = 0, tries = 0; i < o.num_frames;) {
		unsigned int want = o.num_frames - i < o.batch ? o.num_frames - i : o.batch;
		unsigned int got = xsk_ring_prod__reserve(&fq, want, &idx);
		if (got == 0) {
			if (++tries > 1000) {
				fprintf(stderr, "populate fill ring: %u of %u entries posted, "
					"no room for more (producer %u, consumer %u)\n",
					i, o.num_frames, *fq.producer, *fq.consumer);
				if (i < o.rx_size)
					goto out;
				break; // enough to keep the rx ring busy
			}
			usleep(1000);
			continue;
		}
		for (unsigned int j = 0; j < got; j++, i++)
			*xsk_ring_prod__fill_addr(&fq, idx++) = (__u64)i * o.frame_size;
		xsk_ring_prod__submit(&fq, got);
	}

	if (o.bare) {
		map_fd = load_bare(&o, &prog_fd, &link_fd);
		if (map_fd < 0)
			goto out;
	} else {
		map_fd = bpf_obj_get(o.xskmap);
		if (map_fd < 0) {
			fprintf(stderr, "open pinned xskmap %s: %s\n", o.xskmap, strerror(errno));
			goto out;
		}
	}
	key = o.queue;
	if (bpf_map_update_elem(map_fd, &key, &xsk_fd, BPF_ANY) != 0) {
		fprintf(stderr, "insert xsk into %s at key %u: %s\n", o.bare ? "own xskmap" : o.xskmap, key, strerror(errno));
		goto out;
	}
	in_map = true;

	// The measurement window starts now that XDP can redirect to us.
	itv.it_value.tv_sec = (time_t)o.duration_s;
	itv.it_value.tv_usec = (suseconds_t)((o.duration_s - (double)(time_t)o.duration_s) * 1e6);
	if (itv.it_value.tv_sec == 0 && itv.it_value.tv_usec == 0)
		itv.it_value.tv_usec = 1;
	start = now_s();
	if (setitimer(ITIMER_REAL, &itv, NULL) != 0) {
		fprintf(stderr, "arm duration timer: %s\n", strerror(errno));
		goto out;
	}
	fprintf(stderr, "ready\n");
	fflush(stderr);

	rx_loop(xsk, &rx, &fq, o.batch, &c);
	elapsed = now_s() - start;

	optlen = sizeof(st);
	if (getsockopt(xsk_fd, SOL_XDP, XDP_STATISTICS, &st, &optlen) != 0)
		fprintf(stderr, "warning: read XDP_STATISTICS: %s\n", strerror(errno));
	optlen = sizeof(xo);
	if (getsockopt(xsk_fd, SOL_XDP, XDP_OPTIONS, &xo, &optlen) != 0)
		fprintf(stderr, "warning: read XDP_OPTIONS: %s\n", strerror(errno));

	pps = elapsed > 0 ? (double)c.packets / elapsed : 0;
	printf("rxdrop_libxdp: %s queue %u (%s mode, batch %u, frame %u): "
	       "%llu packets in %.3f s = %.0f pps\n",
	       o.iface, o.queue, (xo.flags & XDP_OPTIONS_ZEROCOPY) ? "zerocopy" : "copy",
	       o.batch, o.frame_size, (unsigned long long)c.packets, elapsed, pps);
	printf("  xdp stats: rx_dropped %llu rx_invalid_descs %llu rx_ring_full %llu "
	       "rx_fill_ring_empty_descs %llu; fill wakeups %llu, empty polls %llu\n",
	       (unsigned long long)st.rx_dropped, (unsigned long long)st.rx_invalid_descs,
	       (unsigned long long)st.rx_ring_full, (unsigned long long)st.rx_fill_ring_empty_descs,
	       (unsigned long long)c.fill_wakeups, (unsigned long long)c.rx_empty_polls);
	if (o.json) {
		printf("{\"name\":\"libxdp\",\"iface\":\"%s\",\"queue\":%u,"
		       "\"packets\":%llu,\"bytes\":%llu,\"seconds\":%.6f,\"pps\":%.1f,"
		       "\"zerocopy\":%s,\"batch\":%u,\"frame_size\":%u,"
		       "\"rx_dropped\":%llu,\"rx_invalid_descs\":%llu,\"tx_invalid_descs\":%llu,"
		       "\"rx_ring_full\":%llu,\"rx_fill_ring_empty_descs\":%llu,"
		       "\"tx_ring_empty_descs\":%llu,\"fill_wakeups\":%llu,\"rx_empty_polls\":%llu}\n",
		       o.iface, o.queue, (unsigned long long)c.packets, (unsigned long long)c.bytes,
		       elapsed, pps, (xo.flags & XDP_OPTIONS_ZEROCOPY) ? "true" : "false",
		       o.batch, o.frame_size,
		       (unsigned long long)st.rx_dropped, (unsigned long long)st.rx_invalid_descs,
		       (unsigned long long)st.tx_invalid_descs, (unsigned long long)st.rx_ring_full,
		       (unsigned long long)st.rx_fill_ring_empty_descs,
		       (unsigned long long)st.tx_ring_empty_descs,
		       (unsigned long long)c.fill_wakeups, (unsigned long long)c.rx_empty_polls);
	}
	fflush(stdout);
	rc = 0;

out:
	if (in_map && bpf_map_delete_elem(map_fd, &key) != 0 && errno != ENOENT) {
		fprintf(stderr, "remove xsk from %s at key %u: %s\n", o.bare ? "own xskmap" : o.xskmap, key, strerror(errno));
		rc = 1;
	}
	if (link_fd >= 0)
		close(link_fd); // detaches the bare program
	if (prog_fd >= 0)
		close(prog_fd);
	if (map_fd >= 0)
		close(map_fd);
	if (xsk)
		xsk_socket__delete(xsk);
	if (umem)
		xsk_umem__delete(umem);
	if (area != MAP_FAILED)
		munmap(area, area_len);
	return rc;
}
