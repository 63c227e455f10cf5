import { readdirSync } from 'node:fs';
import { parseCgroup } from './socket-owner.js';

/**
 * Which container or pod a process belongs to, read from where every
 * runtime leaves it without asking the runtime: the process's cgroup path
 * (`/proc/<pid>/cgroup`, readable by anyone) names the container
 * (`docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`,
 * `libpod-<id>.scope`, or a bare 64-hex segment under `/docker/` and the
 * kubelet's cgroupfs layout) and, under the kubelet's `kubepods` tree, the
 * pod's UID (`pod<uid>`, or `kubepods-<qos>-pod<uid_with_underscores>.slice`
 * with the systemd driver). The pod's name and namespace are not in the
 * cgroup path: the kubelet names each pod's log directory
 * `<namespace>_<name>_<uid>` under `/var/log/pods` (PodLogsDir), the same
 * on containerd and CRI-O, so a listing of that one directory maps UIDs to
 * names (podDirectory).
 *
 * Hand-written: no npm package reads cgroup paths this way without also
 * talking to a runtime's API (which needs its socket, i.e. root-equivalent
 * rights the daemon does not want).
 */

export interface ContainerIdentity {
  /** The container id as the runtime prints it (64 hex for Docker, containerd, CRI-O, Podman). */
  id: string;
  /** `docker`, `containerd`, `cri-o`, `podman`, `lxc`, `kubernetes` (the kubelet's bare layout), or `` when not known (a record from another node). */
  runtime: string;
  /** Kubernetes: the pod's name, when the pod directory lists it. */
  pod?: string | undefined;
  /** Kubernetes: the pod's namespace, when the pod directory lists it. */
  podNamespace?: string | undefined;
  /** Kubernetes: the pod's UID (from the cgroup path). */
  podUid?: string | undefined;
}

/**
 * The container (and pod UID) a `/proc/<pid>/cgroup` text names, or
 * undefined for a process outside any container: socket-owner.ts's
 * parseCgroup, the one parser of cgroup paths (every runtime's layout,
 * cgroup v1 and v2, inside a cgroup namespace too).
 */
export function containerOfCgroup(text: string): ContainerIdentity | undefined {
  const c = parseCgroup(text).container;
  return c ? { ...c } : undefined;
}

/** A pod as its log directory's name says: `<namespace>_<name>_<uid>`. */
export interface PodName {
  namespace: string;
  name: string;
}

const POD_DIR = /^([a-z0-9-]{1,63})_([a-z0-9.-]{1,253})_([0-9a-f-]{36})$/;

/** Parses one entry of the kubelet's pod log directory; undefined for anything else. */
export function parsePodDirectoryEntry(entry: string): ({ uid: string } & PodName) | undefined {
  const m = POD_DIR.exec(entry);
  return m ? { namespace: m[1]!, name: m[2]!, uid: m[3]! } : undefined;
}

/**
 * Pod UID → name and namespace, from a listing of the kubelet's pod log
 * directory. The listing is read again only when a UID is asked that the
 * last one did not hold (a new pod), at most once per `minRelistMs`, so a
 * node's steady state reads nothing. Bounded by the pods the directory
 * lists (the kubelet's own bound: pods per node, 110 by default).
 */
export class PodDirectory {
  private byUid = new Map<string, PodName>();
  private listedAtMs = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly dir: string,
    private readonly now: () => number = Date.now,
    private readonly minRelistMs = 1_000,
  ) {}

  /** The pod of `uid`, listing the directory again when it is not known yet (and the last listing is old enough). */
  lookup(uid: string): PodName | undefined {
    const known = this.byUid.get(uid);
    if (known || this.now() - this.listedAtMs < this.minRelistMs) return known;
    this.list();
    return this.byUid.get(uid);
  }

  private list(): void {
    this.listedAtMs = this.now();
    const next = new Map<string, PodName>();
    let entries: string[];
    try {
      entries = readdirSync(this.dir);
    } catch {
      // No kubelet here (or the directory is not mounted): pods stay unnamed, their UID still shown.
      entries = [];
    }
    for (const e of entries) {
      const p = parsePodDirectoryEntry(e);
      if (p) next.set(p.uid, { namespace: p.namespace, name: p.name });
    }
    this.byUid = next;
  }
}
