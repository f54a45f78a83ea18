// The host's own settings for strata, in /etc/strata/config.json (or $STRATA_CONFIG): things a site
// decides once for every run on the machine, not per repository. Read once at a composition root
// (src/compose/engine.ts) and passed down as values; nothing below that reads the file or the environment.
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { StrataError } from '../errors.js';

export const defaultHostConfigPath = '/etc/strata/config.json';
/** The host's CA bundle: what "the host trusts" means for trust_host_ca. */
export const defaultHostCaBundle = '/etc/ssl/certs/ca-certificates.crt';

const hostConfigSchema = z
  .object({
    /**
     * Every machine trusts the CAs the host trusts (a network that inspects TLS with its own CA):
     * see src/config/hostCa.ts. `strata run --trust-host-ca` turns it on for one run.
     */
    trust_host_ca: z.boolean().default(false),
    /** The bundle whose certificates machines are made to trust (default the host's system bundle). */
    host_ca_bundle: z.string().startsWith('/', 'an absolute path').default(defaultHostCaBundle),
    /** LAYERCI_ORG_NAME (the hosted product's organisation); default the repository's owner. */
    org_name: z.string().regex(/^[A-Za-z0-9._-]*$/, 'letters, digits, ".", "_" or "-"').optional(),
  })
  .strict();

export type HostConfig = z.infer<typeof hostConfigSchema>;

/** The settings of a host without a config file. */
export const defaultHostConfig = (): HostConfig => hostConfigSchema.parse({});

/** The config file's path: explicit, else $STRATA_CONFIG, else /etc/strata/config.json. */
export function hostConfigPath(explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  return explicit ?? env.STRATA_CONFIG ?? defaultHostConfigPath;
}

/** Parses a config file's text (pure); `path` only names the file in errors. */
export function parseHostConfig(text: string, path: string): HostConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new StrataError('STRATA_USAGE', `invalid host config ${path}: ${(error as Error).message}`, {
      cause: error,
      hint: 'a JSON object, e.g. {"trust_host_ca": true}',
    });
  }
  const parsed = hostConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(top)'}: ${issue.message}`);
    throw new StrataError('STRATA_USAGE', `invalid host config ${path}: ${problems.join('; ')}`, {
      hint: `known settings: ${Object.keys(hostConfigSchema.shape).join(', ')}`,
    });
  }
  return parsed.data;
}

/** Reads the host config; a missing file means the defaults, an unreadable or invalid one is an error. */
export async function loadHostConfig(path: string): Promise<HostConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return defaultHostConfig();
    throw new StrataError('STRATA_USAGE', `cannot read the host config ${path}: ${(error as Error).message}`, { cause: error });
  }
  return parseHostConfig(text, path);
}
