"""Chain-of-focus tool use: the crop tool and its session (`crop`), and the template-native dialect (`protocol`)."""
