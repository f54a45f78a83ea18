// Repositories, their secrets (names only ever leave), and manual triggers.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { StrataError } from '../../errors.js';
import type { Repo } from '../api/types.js';
import type { ServerContext } from '../context.js';
import { localHeadBranch, resolveRevision } from '../repos/resolve.js';
import { REPO_NAME, SECRET_NAME } from '../repos/store.js';
import { parseInput } from './validate.js';

const BRANCH = z.string().min(1).max(255).regex(/^[^\s~^:?*[\\]+$/, 'not a valid branch name');
const RepoParams = z.object({ repo: z.string() });
const SecretParams = z.object({ repo: z.string(), name: z.string().regex(SECRET_NAME, 'letters, digits and _, not starting with a digit') });
const NewRepoBody = z.object({
  name: z.string().regex(REPO_NAME, 'lowercase letters, digits, ., _ and -, starting with a letter or digit'),
  url: z.string().trim().min(1, 'a git URL or an absolute local path'),
  defaultBranch: BRANCH.optional(),
  pollSeconds: z.number().int().min(10).max(86_400).nullable().optional(),
  publicPreviews: z.boolean().optional(),
});
const SecretBody = z.object({ value: z.string().max(64 * 1024) });
const TriggerBody = z.object({ branch: BRANCH.optional(), commit: z.string().regex(/^[0-9a-f]{4,64}$/i, 'a commit id (hex)').optional() });

export async function repoRoutes(app: FastifyInstance, options: { ctx: ServerContext }): Promise<void> {
  const { ctx } = options;
  const repoNamed = async (name: string): Promise<Repo> => {
    const repo = await ctx.repos.get(name);
    if (!repo) throw new StrataError('STRATA_NOT_FOUND', `no repository ${name}`);
    return repo;
  };

  app.get('/api/repos', async () => ({ repos: await ctx.repos.list() }));

  app.post('/api/repos', async (request) => {
    const body = parseInput(NewRepoBody, request.body, 'body');
    const defaultBranch = body.defaultBranch ?? (await localHeadBranch(body.url)) ?? undefined;
    return await ctx.repos.add({ ...body, defaultBranch });
  });

  app.get('/api/repos/:repo', async (request) => ({ repo: await repoNamed(parseInput(RepoParams, request.params, 'params').repo) }));

  app.get('/api/repos/:repo/secrets', async (request) => ({ names: await ctx.repos.secretNames(parseInput(RepoParams, request.params, 'params').repo) }));

  app.put('/api/repos/:repo/secrets/:name', async (request) => {
    const params = parseInput(SecretParams, request.params, 'params');
    const body = parseInput(SecretBody, request.body, 'body');
    return { names: await ctx.repos.setSecret(params.repo, params.name, body.value) };
  });

  app.delete('/api/repos/:repo/secrets/:name', async (request) => {
    const params = parseInput(SecretParams, request.params, 'params');
    return { names: await ctx.repos.deleteSecret(params.repo, params.name) };
  });

  app.post('/api/repos/:repo/trigger', async (request) => {
    const repo = await repoNamed(parseInput(RepoParams, request.params, 'params').repo);
    const body = parseInput(TriggerBody, request.body, 'body');
    if (!ctx.engine.remotes) throw new StrataError('STRATA_INTERNAL', 'this server was composed without a remote cache');
    const revision = await resolveRevision(ctx.engine.remotes, repo, body);
    const job = await ctx.jobs.enqueue({ repo: repo.name, ...revision, trigger: 'manual' });
    request.log.info({ job: job.id, repo: repo.name, commit: revision.commit, user: request.user?.name }, 'manual trigger');
    return { job };
  });
}
