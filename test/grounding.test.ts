// The grounding rules of armor-serve eval: item, colour and failure mode named, over the
// vocabulary of the episode generator.
import path from 'node:path';
import t from 'tap';
import { readDataset } from '../src/eval/dataset.js';
import { grounding, itemOfTask, namedMode, namesColour, namesItem } from '../src/eval/grounding.js';
import { FIXTURES } from './helpers.js';

t.test('the mode rules read every reference explanation of a generated set as its own mode', async (t) => {
  const episodes = await readDataset(path.join(FIXTURES, 'eval-small'));
  t.ok(episodes.length >= 10);
  for (const e of episodes) {
    t.equal(namedMode(e.explanation ?? ''), e.failureMode, `${e.id}: ${e.explanation}`);
    t.ok(e.item && namesItem(e.explanation ?? '', e.item), `${e.id} names its item ${e.item}`);
  }
});

t.test('items, colours and modes, word by word', async (t) => {
  t.equal(itemOfTask('take the Purple Cylinder out of the left bin'), 'purple cylinder');
  t.equal(itemOfTask('move the thing into the tote'), undefined);
  t.ok(namesItem('The purple cylinder fell.', 'purple cylinder'));
  t.notOk(namesItem('The purple bag fell.', 'purple cylinder'), 'the colour alone is not the item');
  t.ok(namesColour('The purple bag fell.', 'purple cylinder'), 'but it is the colour');
  t.notOk(namesColour('The reddish box fell.', 'red box'), 'whole words only');
  t.equal(namedMode('The red box hit the wall of the destination tote and dropped halfway.'), 'collision_knockout', 'the first rule wins');
  t.equal(namedMode('Something happened.'), undefined);
});

t.test('shares over the episodes each rule applies to', async (t) => {
  const g = grounding([
    { explanation: 'The red box fell off the suction cup halfway to the destination tote.', item: 'red box', failureMode: 'drop_in_transit' },
    { explanation: 'The blue bag was placed outside the destination tote.', item: 'red box', failureMode: 'grasp_miss' },
    { explanation: 'The suction cup lifted the green wedge and placed it inside the destination tote.', item: 'green wedge', failureMode: 'success' },
    { explanation: 'It fell.', failureMode: 'failure' },
  ]);
  t.same(g, { item_named: 2 / 3, colour_named: 2 / 3, failure_mode_named: 1 / 2 });
  t.same(grounding([]), { item_named: null, colour_named: null, failure_mode_named: null });
});
