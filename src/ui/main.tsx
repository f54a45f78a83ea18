// The web UI's entry: who is signed in (GET /api/me), then one of its pages by path.
import { StrictMode, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { api, onUnauthorized, type User } from './api.js';
import { Layout } from './components/Layout.js';
import { JobPage } from './pages/JobPage.js';
import { LoginPage } from './pages/LoginPage.js';
import { ReposPage } from './pages/ReposPage.js';
import { RunsPage } from './pages/RunsPage.js';
import { WorkersPage } from './pages/WorkersPage.js';
import { navigate, useLocation } from './router.js';
import './styles.css';

function App() {
  const { pathname } = useLocation();
  // undefined: still asking the server; null: signed out
  const [user, setUser] = useState<User | null | undefined>(undefined);

  useEffect(() => {
    api<{ user: User }>('GET', '/api/me').then(
      ({ user }) => setUser(user),
      () => setUser(null),
    );
    return onUnauthorized(() => setUser(null));
  }, []);

  if (user === undefined) return null;
  if (user === null)
    return (
      <LoginPage
        onLogin={(signedIn) => {
          setUser(signedIn);
          if (pathname === '/login') navigate('/', { replace: true });
        }}
      />
    );

  const logout = async () => {
    await api('POST', '/api/logout').catch(() => {});
    setUser(null);
  };
  const job = /^\/jobs\/([^/]+)/.exec(pathname);
  const page = job?.[1] ? <JobPage key={job[1]} id={decodeURIComponent(job[1])} /> : pathname.startsWith('/repos') ? <ReposPage /> : pathname.startsWith('/workers') ? <WorkersPage /> : <RunsPage />;
  return (
    <Layout user={user.name} pathname={pathname} onLogout={logout}>
      {page}
    </Layout>
  );
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
