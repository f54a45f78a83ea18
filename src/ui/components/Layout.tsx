import type { ReactNode } from 'react';
import { Link } from '../router.js';

export function Layout({ user, pathname, onLogout, children }: { user: string; pathname: string; onLogout: () => void; children: ReactNode }) {
  const section = pathname.startsWith('/repos') ? 'repos' : pathname.startsWith('/workers') ? 'workers' : 'runs';
  return (
    <div className="shell">
      <header className="topbar">
        <Link href="/" className="brand">
          <span className="brand-mark" aria-hidden>
            <i />
            <i />
            <i />
          </span>
          strata
        </Link>
        <nav className="nav">
          <Link href="/" className={section === 'runs' ? 'active' : ''}>
            Runs
          </Link>
          <Link href="/repos" className={section === 'repos' ? 'active' : ''}>
            Repositories
          </Link>
          <Link href="/workers" className={section === 'workers' ? 'active' : ''}>
            Workers
          </Link>
        </nav>
        <div className="topbar-right">
          <span className="user-chip" data-testid="user">
            {user}
          </span>
          <button className="btn btn-ghost btn-sm" onClick={onLogout}>
            Log out
          </button>
        </div>
      </header>
      <main className="content">{children}</main>
    </div>
  );
}
