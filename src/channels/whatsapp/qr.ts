// Renders the pairing string Baileys emits as a PNG data URL for the QR endpoints. The qrcode
// library (with its PNG encoder) is loaded by the first QR asked for, not at start.
export async function qrToPngDataUrl(qr: string): Promise<string> {
  const { default: QRCode } = await import('qrcode');
  // Medium error correction and a 4-module quiet zone: what phone scanners read most reliably.
  return QRCode.toDataURL(qr, { type: 'image/png', errorCorrectionLevel: 'M', margin: 4, scale: 6 });
}
