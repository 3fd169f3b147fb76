#!/bin/bash
# Runs `mpirun -np 2 COMMAND…` with its two ranks on two "hosts" of this machine: two network
# namespaces joined by a veth pair, so the ranks reach each other only through Open MPI's TCP
# transport over that link, as ranks on two machines do. Open MPI starts the second host's daemon
# through an rsh agent that enters its namespace instead of logging in with ssh. Prints the bytes
# that crossed the link (`two-hosts: N bytes over the link`), so a caller can tell the ranks talked
# through it. Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and `ip`; exits 77 where namespaces cannot be
# made (a container without those capabilities). Everything it made is removed however it ends.
#
#   tools/mpirun-two-hosts.sh lowrank train --device cpu --steps 20 --adapter-out out
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: $0 COMMAND [ARGS…]" >&2; exit 2; }
command -v mpirun >/dev/null || { echo "two-hosts: mpirun is not installed (Debian: apt-get install openmpi-bin libopenmpi-dev)" >&2; exit 77; }
command -v ip >/dev/null || { echo "two-hosts: ip (iproute2) is not installed" >&2; exit 77; }

# Names and a /24 of 10.0.0.0/8 unique to this process, so concurrent runs do not collide.
tag=lr$$
ns=("$tag-h0" "$tag-h1")
subnet="10.$((200 + $$ % 50)).$(($$ / 50 % 250))"
address=("$subnet.1" "$subnet.2")
work=$(mktemp -d)

cleanup() {
    ip netns del "${ns[0]}" 2>/dev/null || true
    ip netns del "${ns[1]}" 2>/dev/null || true  # deleting a namespace deletes its end of the veth pair, and so the pair
    rm -rf "$work"
}
trap cleanup EXIT

if ! ip netns add "${ns[0]}" 2>"$work/error"; then
    echo "two-hosts: cannot make network namespaces here: $(cat "$work/error")" >&2
    exit 77
fi
ip netns add "${ns[1]}"
ip link add "$tag-v0" type veth peer name "$tag-v1"
for i in 0 1; do
    ip link set "$tag-v$i" netns "${ns[$i]}"
    ip -n "${ns[$i]}" addr add "${address[$i]}/24" dev "$tag-v$i"
    ip -n "${ns[$i]}" link set lo up
    ip -n "${ns[$i]}" link set "$tag-v$i" up
done

# Open MPI calls the agent as `agent HOST COMMAND…`, where ssh would log in to HOST.
cat > "$work/agent" <<AGENT
#!/bin/sh
host=\$1; shift
case \$host in
    ${address[0]}) exec ip netns exec ${ns[0]} sh -c "\$*" ;;
    ${address[1]}) exec ip netns exec ${ns[1]} sh -c "\$*" ;;
    *) echo "two-hosts agent: unknown host \$host" >&2; exit 1 ;;
esac
AGENT
chmod +x "$work/agent"

link_bytes() {  # `ip netns exec` mounts the namespace's own /sys
    ip netns exec "${ns[0]}" sh -c "echo \$((\$(cat /sys/class/net/$tag-v0/statistics/rx_bytes) + \$(cat /sys/class/net/$tag-v0/statistics/tx_bytes)))"
}

status=0
ip netns exec "${ns[0]}" mpirun --allow-run-as-root --oversubscribe -np 2 --host "${address[0]}:1,${address[1]}:1" \
    --mca plm_rsh_agent "$work/agent" --mca btl tcp,self \
    --mca btl_tcp_if_include "$subnet.0/24" --mca oob_tcp_if_include "$subnet.0/24" \
    "$@" || status=$?
echo "two-hosts: $(link_bytes) bytes over the link"
exit $status
