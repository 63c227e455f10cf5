import { readdirSync } from 'node:fs';

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
  /** `docker`, `containerd`, `cri-o`, `podman`, or `` when the cgroup path does not say. */
  runtime: string;
  /** Kubernetes: the pod's name, when the pod directory lists it. */
  pod?: string | undefined;
  /** Kubernetes: the pod's namespace, when the pod directory lists it. */
  podNamespace?: string | undefined;
  /** Kubernetes: the pod's UID (from the cgroup path). */
  podUid?: string | undefined;
}

const HEX64 = /^[0-9a-f]{64}$/;
/** `<prefix>-<64 hex>.scope` → runtime. conmon's own scope (`crio-conmon-<id>`) is CRI-O's monitor, not the container. */
const SCOPE = /^(docker|cri-containerd|crio|libpod)-([0-9a-f]{64})\.scope$/;
const RUNTIME_OF: Record<string, string> = { docker: 'docker', 'cri-containerd': 'containerd', crio: 'cri-o', libpod: 'podman' };
/** `pod<uid>` (cgroupfs driver) or `kubepods-<qos>-pod<uid>.slice` (systemd driver, `-` in the uid written `_`). */
const POD_SEGMENT = /^(?:kubepods(?:-[a-z]+)?-)?pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?$/;

/**
 * The container (and pod UID) a `/proc/<pid>/cgroup` text names, or
 * undefined for a process outside any container. Every hierarchy's line is
 * read (cgroup v1 and v2 alike; inside a cgroup namespace the paths start
 * with `/..`); the first that names a container wins, the unified one
 * (`0::`) first.
 */
export function parseCgroup(text: string): ContainerIdentity | undefined {
  const lines = text.split('\n').filter((l) => l.length > 0);
  lines.sort((a, b) => Number(!a.startsWith('0::')) - Number(!b.startsWith('0::')));
  for (const line of lines) {
    const path = line.slice(line.indexOf(':', line.indexOf(':') + 1) + 1);
    const found = fromPath(path);
    if (found) return found;
  }
  return undefined;
}

function fromPath(path: string): ContainerIdentity | undefined {
  const segments = path.split('/').filter((s) => s.length > 0 && s !== '..');
  let podUid: string | undefined;
  let kube = false;
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    if (s.startsWith('kubepods')) kube = true;
    const pod = POD_SEGMENT.exec(s);
    if (pod && (kube || s.startsWith('kubepods'))) podUid = pod[1]!.replace(/_/g, '-');
    const scope = SCOPE.exec(s);
    if (scope) return identity(scope[2]!, RUNTIME_OF[scope[1]!]!, podUid);
    if (HEX64.test(s)) {
      const parent = segments[i - 1];
      return identity(s, parent === 'docker' ? 'docker' : parent === 'libpod_parent' ? 'podman' : '', podUid);
    }
  }
  return undefined;
}

function identity(id: string, runtime: string, podUid: string | undefined): ContainerIdentity {
  return podUid ? { id, runtime, podUid } : { id, runtime };
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
