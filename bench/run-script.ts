/** Runs a bench script's `main`: exit 0 when it resolves, 1 with the error on stderr when it rejects (its children and etcd are its own to stop first). */
export function runScript(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}

/** A bench script's `--name VALUE` option from its command line, or undefined. */
export function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
