// The console: a hash router over two views (the episode list, one episode) and the API key.
import { apiKey } from './api.js';
import { renderEpisode } from './episode.js';
import { renderList } from './list.js';

const main = document.getElementById('main');
let leave = () => {};
let view = 0;

function route() {
  leave();
  leave = () => {};
  const mine = ++view;
  const hash = location.hash.replace(/^#/, '') || '/';
  // #/episodes/<id>?cell_id=<cell>: ids are unique within a cell (empty: the episode without one).
  const m = /^\/episodes\/([^?]+)(?:\?(.*))?$/.exec(hash);
  if (m) {
    const cell = new URLSearchParams(m[2] ?? '').get('cell_id');
    void renderEpisode(main, decodeURIComponent(m[1]), cell, () => view === mine);
    return;
  }
  const q = hash.indexOf('?');
  leave = renderList(main, new URLSearchParams(q >= 0 ? hash.slice(q + 1) : ''), (to) => (location.hash = to));
}

const keyInput = document.getElementById('api-key');
const keyState = document.getElementById('key-state');
const showKeyState = () => (keyState.textContent = apiKey.get() ? 'key set for this tab' : 'no key');
document.getElementById('key-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  apiKey.set(keyInput.value.trim());
  keyInput.value = '';
  showKeyState();
  route();
});
showKeyState();
window.addEventListener('hashchange', route);
route();
