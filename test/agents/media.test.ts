// Media in the agent protocols: the JSON body's `media` and `transcribed` (only when there is
// media), AG-UI content parts, OpenAI image_url parts with the transcript as text, and a JSON
// reply's `media` (with or without text).
import { describe, expect, test } from 'bun:test';
import { runAgentInput } from '../../src/agents/agui.ts';
import { seedBody } from '../../src/agents/http.ts';
import { replyWithMediaFromJson } from '../../src/agents/json.ts';
import { openAiContent } from '../../src/agents/openai.ts';
import type { AgentRequest } from '../../src/agents/types.ts';

const base: AgentRequest = {
  userId: 'whatsapp:+15550001111',
  sessionId: 'conv-1',
  message: 'what is this?',
  context: { channel: 'whatsapp', instance: 'bot', source: 'whatsapp' },
  sessionOrigin: 'whatsapp',
  idempotencyKey: 'k',
  messageId: 'm-1',
};
const image = {
  id: 'img-1',
  type: 'image' as const,
  mimeType: 'image/png',
  sizeBytes: 30,
  url: 'https://gw.example/media/img-1?exp=1&sig=x',
};
const voice = {
  id: 'aud-1',
  type: 'audio' as const,
  mimeType: 'audio/ogg; codecs=opus',
  sizeBytes: 64,
  url: 'https://gw.example/media/aud-1?exp=1&sig=y',
  transcript: 'hello there',
};

describe('requests with media', () => {
  test('JSON body: media and transcribed only when there is media', () => {
    expect(seedBody(base)).not.toHaveProperty('media');
    expect(seedBody(base)).not.toHaveProperty('transcribed');
    const body = seedBody({ ...base, message: 'hello there', media: [voice], transcribed: true });
    expect(body.media).toEqual([voice]);
    expect(body.transcribed).toBe(true);
  });

  test('AG-UI: a text part, then a binary part per item (data when inlined)', () => {
    expect((runAgentInput(base).messages as any[])[0].content).toBe('what is this?');
    const input = runAgentInput({ ...base, media: [{ ...image, base64: 'iVBORw==' }] });
    expect((input.messages as any[])[0].content).toEqual([
      { type: 'text', text: 'what is this?' },
      { type: 'binary', mimeType: 'image/png', id: 'img-1', url: image.url, data: 'iVBORw==' },
    ]);
  });

  test('OpenAI: image_url parts (a data URL when inlined), the transcript as text', () => {
    expect(openAiContent({ ...base, media: [image] })).toEqual([
      { type: 'text', text: 'what is this?' },
      { type: 'image_url', image_url: { url: image.url } },
    ]);
    expect(openAiContent({ ...base, media: [{ ...image, base64: 'QUJD' }] })[1]).toEqual({
      type: 'image_url',
      image_url: { url: 'data:image/png;base64,QUJD' },
    });
    // A voice note whose transcript is the message: the text part says it once.
    expect(openAiContent({ ...base, message: 'hello there', media: [voice] })).toEqual([
      { type: 'text', text: 'hello there' },
    ]);
  });
});

describe('replies with media', () => {
  test('text and media; media alone; malformed items left out', () => {
    expect(replyWithMediaFromJson('{"text":"hi"}')).toEqual({ text: 'hi', media: [] });
    expect(
      replyWithMediaFromJson(
        JSON.stringify({
          text: 'a cat',
          media: [{ url: 'https://x/cat.png', type: 'image', caption: 'cat' }, { type: 'image' }, 'nope', null],
        }),
      ),
    ).toEqual({ text: 'a cat', media: [{ url: 'https://x/cat.png', type: 'image', caption: 'cat' }] });
    expect(replyWithMediaFromJson('{"media":[{"base64":"QUJD","voiceNote":true}]}')).toEqual({
      text: '',
      media: [{ base64: 'QUJD', voiceNote: true }],
    });
    // Without media, a missing text field is still an error.
    expect(() => replyWithMediaFromJson('{"answer":"x"}')).toThrow(/no text field/);
  });
});
