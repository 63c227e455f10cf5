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
