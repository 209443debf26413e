import Curio
print("curio-demo: placeholder")
