"""Shot crop: OCR finds burned-in text and each shot is cropped to the largest clean rectangle."""
