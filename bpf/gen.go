package bpf

//go:generate go tool bpf2go -tags linux -target bpfel -cc clang -cflags "-O2 -mcpu=v3 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -type steer_stats -type steer_slot_stats -type rule -type rule_key -type rule_set -type flow_key -type flow_target -type rule_cache_entry -type steer_ctl -type fast_bucket -type fast_way -type fast_rule_bucket -type rule_head -type occ_slot -type rule_memo steer steer.bpf.c
//go:generate go tool bpf2go -tags linux -target bpfel -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -type count_stats drop drop.bpf.c
//go:generate go tool bpf2go -tags linux -target bpfel -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -type gen_stats gen gen.bpf.c
